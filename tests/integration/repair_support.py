"""A small thulobazaar world with every kind of broken slug and a few orphan files, for the repair tests."""

from __future__ import annotations

import os
import time
from pathlib import Path

from guard.config.settings import Settings
from guard.db.database import Database

OLD = time.time() - 7200
# id, title, slug: the ground truth the tests compare against.
ADS: list[tuple[int, str, str | None]] = [
    (1, "Honda City", "honda-city-1"),  # valid, unique: never touched
    (2, "बिक्रीमा होन्डा सिटी", None),  # missing
    (3, "Sofa set", "   "),  # blank
    (4, "Yamaha FZ", "Yamaha_FZ_4"),  # malformed
    (5, "Old sofa", "sofa-set-5"),  # shared valid slug: the lowest id keeps it
    (6, "New sofa", "sofa-set-5"),  # shared: rewritten
    (7, "😀", "bad slug"),  # malformed, nothing usable in the title: fallback
    (8, "Nepali phone", "nepali-phone-9"),  # valid, unique, but what ad 9 would get: 9 gets a suffix
    (9, "Nepali phone", None),
]


def populate(db: Database) -> None:
    db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
    db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
    for key, title, slug in ADS:
        db.execute(
            "INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (%s, %s, %s, 1, 1)",
            (key, title, slug),
        )


def slugs_of(db: Database) -> dict[int, str | None]:
    return {int(k): s for k, s in db.fetch_all("SELECT id, slug FROM ads ORDER BY id")}


def uploads(tmp_path: Path, db: Database, orphans: int = 3) -> Path:
    """An uploads root: one referenced file and some old orphans under uploads/ads."""
    root = tmp_path / "public"
    ads = root / "uploads" / "ads"
    ads.mkdir(parents=True)
    (ads / "kept.webp").write_bytes(b"kept")
    db.execute(
        "INSERT INTO ad_images (ad_id, filename, file_path) VALUES (1, 'kept.webp', 'uploads/ads/kept.webp')"
    )
    for n in range(orphans):
        path = ads / f"orphan-{n}.webp"
        path.write_bytes(f"orphan {n}".encode() * 100)
        os.utime(path, (OLD, OLD))
    return root


def settings_for(db_url: str, root: Path | None = None, backup_dir: Path | None = None) -> Settings:
    return Settings(database_url=db_url, uploads_root=root, backup_dir=backup_dir, orphan_grace=600)


def env_for(db_url: str, root: Path | None = None, backup_dir: Path | None = None) -> dict[str, str]:
    env = {"DATABASE_URL": db_url, "ORPHAN_GRACE": "600"}
    if root is not None:
        env["UPLOADS_ROOT"] = str(root)
    if backup_dir is not None:
        env["BACKUP_DIR"] = str(backup_dir)
    return env
