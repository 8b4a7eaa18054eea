-- AlterTable
ALTER TABLE "categories" ADD COLUMN "form_template" JSONB;
