-- A copy of the database (staging, a duplicate) must never act on production's FreshBooks: the
-- refresh token works once (refreshing it here disconnects production), the webhooks deliver
-- production's changes, and pending pushes would send test edits to the real business.
UPDATE freshbooks_token
    SET access_token = NULL, refresh_token = NULL, expiry = NULL;
DELETE FROM freshbooks_webhook;
DELETE FROM freshbooks_queue;
UPDATE res_partner
    SET freshbooks_push_state = NULL, freshbooks_push_error = NULL
    WHERE freshbooks_push_state = 'pending';
UPDATE freshbooks_account
    SET state = 'draft', business_choices = NULL, oauth_state = NULL,
        status_message = 'This database is a neutralized copy: FreshBooks is disconnected here. Contacts keep their FreshBooks links. Connect a test FreshBooks business to try the connector on this copy.';
