-- Homepage listing: newest active ads first.
CREATE INDEX "ads_active_created_at_idx" ON "ads"("created_at" DESC) WHERE "status" = 'active';

-- Case-insensitive title search.
CREATE INDEX "ads_lower_title_idx" ON "ads"(lower("title"));

-- Prices are never negative.
ALTER TABLE "ads" ADD CONSTRAINT "ads_price_non_negative" CHECK ("price" IS NULL OR "price" >= 0);
