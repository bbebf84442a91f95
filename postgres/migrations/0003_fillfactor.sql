-- Room on the pages of the two tables whose rows are updated in place.
-- A claim changes no indexed column of its delivery: with room on the page
-- it is a HOT update (no new index entries), not a copy of the wide row
-- into every index of pending deliveries. An order's new decision is HOT
-- the same way (its only index is the order id). Pages written from now on
-- keep the room; existing ones fill as they are.
ALTER TABLE deliveries SET (fillfactor = 70);
ALTER TABLE orders SET (fillfactor = 80);
