-- AlterTable
ALTER TABLE "ads" ADD COLUMN "custom_fields" JSONB NOT NULL DEFAULT '{}';
