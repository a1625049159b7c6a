-- OrderPlaced v3 carries the customer's e-mail: the receipt goes there. Earlier payments have none.
ALTER TABLE payments ADD COLUMN receipt_email TEXT;
