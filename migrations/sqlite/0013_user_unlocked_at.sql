-- When an administrator last unlocked the user (`banditore user unlock`, or the API): the
-- console's failed-login counts for that name before this moment are forgiven.
ALTER TABLE users ADD COLUMN unlocked_at BIGINT;
