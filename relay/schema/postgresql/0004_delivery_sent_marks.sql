-- A send noted the moment the notifier accepted it, committed on its own connection, outside the claim's
-- transaction: if the relay dies before the claim commits (its row locks and results roll back), the next claim
-- folds these marks into the deliveries instead of sending them again. At most the send in hand is repeated.
CREATE TABLE delivery_sent_marks (
    delivery_id bigint PRIMARY KEY,
    sent_at double precision NOT NULL,
    provider_id text
);
