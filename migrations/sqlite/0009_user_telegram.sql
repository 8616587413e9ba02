-- A console user's Telegram account (its user id), linked from the console: draft buttons
-- pressed by that account act as that user, with that user's roles.
ALTER TABLE users ADD COLUMN telegram_user TEXT;
CREATE UNIQUE INDEX users_telegram ON users (telegram_user) WHERE telegram_user IS NOT NULL;
