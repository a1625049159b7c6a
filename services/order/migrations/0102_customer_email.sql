-- OrderPlaced v3: the customer's e-mail, when they give one. Orders placed before have none.
ALTER TABLE orders ADD COLUMN customer_email TEXT;
