"""Build and drop the thulobazaar demo world: a migrated database, an uploads folder, planted incidents."""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from guard.db.database import Database
from guard.db.servers import create_database, drop_database, url_with_database
from guard.demo import planting
from guard.demo.planting import AdPlan, ImagePlan, PlantedImage
from guard.errors import UsageError
from guard.schema.history import apply_and_record, ensure_migrations_table, read_migrations

Progress = Callable[[str, int, int], None]

MIGRATIONS = Path(__file__).resolve().parent / "prisma" / "migrations"
DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
MAX_ADS = 10_000_000
WORLD_MARK = "incident-guard demo world"  # the comment on a database a world build created
DATABASE_MARK_QUERY = "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s"
MARKER = ".guard-world"  # a folder holding this file was made by build_world and may be emptied
CHUNK = 5_000
OLD_AGE_S = 2 * 3600
# A 1x1 lossless WebP: real image bytes, 34 of them.
WEBP = base64.b64decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")
START = datetime(2024, 6, 1)
START_MS = 1_717_200_000_000  # START as Unix milliseconds
AD_SPACING_S = 61
IMAGE_COUNTS = (0, 1, 2, 3, 4)
IMAGE_CUM_WEIGHTS = (1, 3, 7, 9, 10)  # weights 1, 2, 4, 2, 1: two images per ad on average

# (name, slug, parent id, items a title is made from); ids are positions from 1, parents first.
CATEGORIES: tuple[tuple[str, str, int | None, tuple[str, ...]], ...] = (
    ("Vehicles", "vehicles", None, ()),
    ("Mobiles", "mobiles", None, ()),
    ("Electronics", "electronics", None, ()),
    ("Real Estate", "real-estate", None, ()),
    ("Home & Living", "home-living", None, ()),
    ("Cars", "cars", 1, ("Honda City", "Hyundai i20", "Suzuki Swift", "Toyota Corolla")),
    ("Motorbikes", "motorbikes", 1, ("Bajaj Pulsar 150", "Royal Enfield Classic", "Yamaha FZ")),
    ("Scooters", "scooters", 1, ("Honda Dio", "TVS Ntorq", "Yamaha Ray ZR")),
    ("Bicycles", "bicycles", 1, ("Giant Talon", "Trek Marlin 5", "Hero Sprint")),
    ("Mobile Phones", "mobile-phones", 2, ("iPhone 13 Pro", "Samsung Galaxy S21", "Redmi Note 10")),
    ("Tablets", "tablets", 2, ("iPad Air", "Galaxy Tab S7", "Lenovo Tab M10")),
    ("Mobile Accessories", "mobile-accessories", 2, ("AirPods Pro", "Anker Power Bank")),
    ("Laptops", "laptops", 3, ("Dell XPS 13", "MacBook Air M1", "Lenovo ThinkPad T14")),
    ("Televisions", "televisions", 3, ("Sony Bravia 55 inch", "LG OLED 48", "Mi TV 4A")),
    ("Cameras", "cameras", 3, ("Canon EOS 200D", "Nikon D5600", "Sony A6400")),
    ("Apartments for Rent", "apartments-for-rent", 4, ("2BHK Flat Baneshwor", "1BHK Jhamsikhel")),
    ("Land for Sale", "land-for-sale", 4, ("4 Aana Land Bhaktapur", "Ropani Plot Budhanilkantha")),
    ("Houses for Sale", "houses-for-sale", 4, ("2.5 Storey House Imadol", "Bungalow Lalitpur")),
    ("Furniture", "furniture", 5, ("Sofa Set 5 Seater", "Teak Wood Bed", "Study Table")),
    ("Kitchen Appliances", "kitchen-appliances", 5, ("Rice Cooker", "Microwave Oven", "Fridge")),
)
FIRST_LEAF = 6
FIRST_NAMES = ("Aarav", "Sita", "Bikash", "Anjali", "Ramesh", "Priya", "Suman", "Nisha")
LAST_NAMES = ("Shrestha", "Gurung", "Tamang", "Rai", "Thapa", "Karki", "Maharjan")
DESCRIPTIONS = ("Well kept, genuine buyers only.", "All papers clear.", "Price slightly negotiable.", None)
STATUS_CUM = ((0.85, "active"), (0.95, "sold"), (1.0, "expired"))

USERS_COPY = "COPY users (id, email, full_name, created_at) FROM STDIN"
CATEGORIES_COPY = "COPY categories (id, name, slug, parent_id, form_template, created_at) FROM STDIN"
ADS_COPY = (
    "COPY ads (id, title, slug, description, price, category_id, user_id, status,"
    " custom_fields, created_at, updated_at) FROM STDIN"
)
IMAGES_COPY = "COPY ad_images (id, ad_id, filename, file_path, is_primary, created_at) FROM STDIN"
SETVAL = "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)"


def build_world(
    server_url: str,
    db_name: str,
    uploads_root: Path,
    ads: int,
    bad_rate: float,
    seed: int = 1,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Create the demo database and uploads folder from scratch; return the planted ground truth."""
    _check_arguments(db_name, ads, bad_rate)
    _check_server_url(server_url, db_name)
    started = time.perf_counter()
    report = progress or _no_progress
    _check_database_is_ours(server_url, db_name)  # also proves the server answers, before any reset
    layout = Layout(Path(uploads_root).resolve())
    try:
        layout.reset(report)  # it refuses a folder no world made before anything is dropped
    except OSError as exc:
        raise UsageError(f"cannot prepare the uploads folder {layout.root}: {exc.strerror}") from None
    _recreate_database(server_url, db_name)
    with Database(url_with_database(server_url, db_name), application_name="guard-world") as db:
        _migrate(db, report)
        counts = _load(db, layout, ads, bad_rate, seed, report)
        db.execute("ANALYZE")
    return {
        "database": db_name,
        "database_url": public_url(server_url, db_name),
        "uploads_root": str(layout.root),
        "seed": seed,
        "bad_rate": bad_rate,
        **counts,
        "duration_s": round(time.perf_counter() - started, 1),
    }


def drop_world(
    server_url: str, db_name: str, uploads_root: Path | None, progress: Progress | None = None
) -> None:
    """Drop the demo database and delete the folders a world build made."""
    _check_name(db_name)
    _check_server_url(server_url, db_name)
    _check_database_is_ours(server_url, db_name)
    with Database(server_url, application_name="guard-world") as server:
        server.execute(drop_database(db_name))
    if uploads_root is not None:
        Layout(Path(uploads_root).resolve()).remove(progress or _no_progress)


def public_url(server_url: str, db_name: str) -> str:
    """Return server_url pointed at db_name, without any password."""
    if "://" not in server_url:
        info = psycopg.conninfo.conninfo_to_dict(server_url)
        info.pop("password", None)
        return psycopg.conninfo.make_conninfo("", **{**info, "dbname": db_name})
    parts = urlsplit(server_url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{userinfo.split(':', 1)[0]}@{hosts}" if at else hosts
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("password", "dbname")]
    return urlunsplit((parts.scheme, netloc, "/" + quote(db_name), urlencode(query), ""))


def _no_progress(step: str, done: int, total: int) -> None:
    """Ignore progress when nobody draws it."""


def _check_name(db_name: str) -> None:
    if not isinstance(db_name, str) or not DB_NAME.fullmatch(db_name):
        raise UsageError(
            f"database name {db_name!r} must be a letter or _ then up to 62 letters, digits or _"
        )


def _check_arguments(db_name: str, ads: int, bad_rate: float) -> None:
    """Reject arguments a user could get wrong, with a sentence instead of a traceback."""
    _check_name(db_name)
    if isinstance(ads, bool) or not isinstance(ads, int) or not 1 <= ads <= MAX_ADS:
        raise UsageError(f"the number of ads must be a whole number from 1 to {MAX_ADS}, not {ads!r}")
    if isinstance(bad_rate, bool) or not isinstance(bad_rate, int | float):
        raise UsageError(f"the bad rate must be a number, not {bad_rate!r}")
    if not 0 <= bad_rate <= 0.5:
        raise UsageError(f"the bad rate must be between 0 and 0.5, not {bad_rate!r}")


def _check_server_url(server_url: str, db_name: str) -> None:
    """Refuse a malformed URL, or one naming the very database we would drop."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(server_url)
    except psycopg.ProgrammingError:
        raise UsageError("the server URL is not a valid PostgreSQL connection string") from None
    if (info.get("dbname") or info.get("user")) == db_name:
        raise UsageError(f"connect through another database than {db_name!r}, which gets dropped")


def _check_database_is_ours(server_url: str, db_name: str) -> None:
    """Refuse to drop an existing database that a world build did not create and mark."""
    with Database(server_url, application_name="guard-world") as server:
        row = server.fetch_one(DATABASE_MARK_QUERY, (db_name,))
    if row is not None and row[0] != WORLD_MARK:
        raise UsageError(f"database {db_name!r} exists and is not a demo world; refusing to drop it")


def _recreate_database(server_url: str, db_name: str) -> None:
    """Drop db_name if it exists and create it empty, in UTF-8 so odd file names fit."""
    with Database(server_url, application_name="guard-world") as server:
        server.execute(drop_database(db_name))
        server.execute(create_database(db_name))
        mark = sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(db_name), sql.Literal(WORLD_MARK)
        )
        server.execute(mark)


@dataclass(frozen=True)
class Layout:
    """The folders of a world: uploads/ads (scanned), uploads/shared, and a sibling outside the root."""

    root: Path

    @property
    def ads_dir(self) -> Path:
        return self.root / "uploads" / "ads"

    @property
    def shared_dir(self) -> Path:
        return self.root / "uploads" / "shared"

    @property
    def outside_dir(self) -> Path:
        return self.root.parent / f"{self.root.name}-outside"

    def reset(self, report: Progress) -> None:
        """Empty and recreate the world's folders, each marked as ours."""
        self.remove(report)
        for folder in (self.ads_dir, self.shared_dir, self.outside_dir):
            folder.mkdir(parents=True)
        self.mark(0)

    def mark(self, entries: int) -> None:
        """Claim both folders, noting how many entries uploads/ads holds for the next removal."""
        for folder in (self.root, self.outside_dir):
            (folder / MARKER).write_text(json.dumps({"entries": entries}) + "\n", encoding="utf-8")

    def remove(self, report: Progress) -> None:
        """Delete the world's folders, refusing any that a world build did not mark."""
        folders = [folder for folder in (self.root, self.outside_dir) if os.path.lexists(folder)]
        for folder in folders:
            _check_ours(folder)
        if self.ads_dir.is_dir() and not self.ads_dir.is_symlink():
            _unlink_files(self.ads_dir, _marked_entries(self.root), report)
        for folder in folders:
            shutil.rmtree(folder)


def _check_ours(folder: Path) -> None:
    """Refuse to delete anything but a plain folder that is empty or marked by a world build."""
    if folder.is_symlink() or not folder.is_dir():
        raise UsageError(f"refusing to replace {folder}: it is not a plain folder")
    if not (folder / MARKER).is_file() and any(folder.iterdir()):
        raise UsageError(f"refusing to empty {folder}: it holds files no demo world made")


def _marked_entries(folder: Path) -> int:
    try:
        return int(json.loads((folder / MARKER).read_text(encoding="utf-8"))["entries"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _unlink_files(folder: Path, expected: int, report: Progress) -> None:
    """Unlink a flat folder's files as they stream past: a million names never sit in memory."""
    done = 0
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    os.unlink(entry.name, dir_fd=dir_fd)
                    done += 1
                    if done % 10_000 == 0:
                        report("clean", done, max(expected, done))
    finally:
        os.close(dir_fd)
    report("clean", done, done)


class FileWriter:
    """Lay down small WebP files and symlinks in one folder through raw os calls, for speed."""

    def __init__(self, folder: Path) -> None:
        self.files = 0
        self.links = 0
        self._dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._dir_fd)

    def write(self, name: str, mtime: float) -> None:
        """Create one regular file with a given mtime; never overwrite."""
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=self._dir_fd)
        try:
            os.write(fd, WEBP)
            os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
        self.files += 1

    def link(self, name: str, target: str) -> None:
        os.symlink(target, name, dir_fd=self._dir_fd)
        self.links += 1


def _migrate(db: Database, report: Progress) -> None:
    """Apply every migration and record it in _prisma_migrations as Prisma would."""
    migrations = read_migrations(MIGRATIONS)
    ensure_migrations_table(db)
    for done, migration in enumerate(migrations, 1):
        apply_and_record(db, migration)
        report("schema", done, len(migrations))


def _copy(db: Database, statement: str, rows: Iterable[tuple[Any, ...]]) -> None:
    """Stream rows into one table with COPY."""
    with db.connection.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _load(
    db: Database, layout: Layout, ads: int, bad_rate: float, seed: int, report: Progress
) -> dict[str, Any]:
    """Write users, categories, ads, images and files, then plant incidents; return the counts."""
    rng = random.Random(f"thulobazaar:{seed}")
    users = max(5, ads // 20)
    blank_names = planting.plan_categories(rng, len(CATEGORIES), bad_rate)
    ad_plan = planting.plan_ads(rng, ads, bad_rate)
    _copy(db, USERS_COPY, _user_rows(users))
    _copy(db, CATEGORIES_COPY, _category_rows(blank_names))
    with FileWriter(layout.ads_dir) as files:
        base = _load_ads(db, files, rng, ads, users, ad_plan, report)
        plan = planting.plan_images(rng, ads, base, base + 1, bad_rate)
        _plant(db, layout, files, plan)
        report("incidents", 1, 1)
    layout.mark(files.files + files.links)
    for table, last_id in (("users", users), ("categories", len(CATEGORIES)), ("ads", ads)):
        db.execute(SETVAL, (table, last_id))
    db.execute(SETVAL, ("ad_images", plan.last_id))
    return {
        "ads": ads,
        "categories": len(CATEGORIES),
        "image_rows": base + len(plan.rows) + len(plan.dangling),
        "files": files.files,  # regular files in uploads/ads; symlinks and files elsewhere not counted
        **planting.planted_counts(ad_plan, blank_names, plan),
    }


def _user_rows(users: int) -> Iterator[tuple[Any, ...]]:
    for user_id in range(1, users + 1):
        first = FIRST_NAMES[user_id % len(FIRST_NAMES)]
        last = LAST_NAMES[user_id // len(FIRST_NAMES) % len(LAST_NAMES)]
        name = None if user_id % 17 == 0 else f"{first} {last}"
        yield user_id, f"user{user_id}@example.com", name, START - timedelta(days=30)


def _category_rows(blank_names: dict[int, str]) -> Iterator[tuple[Any, ...]]:
    for cat_id, (name, slug, parent, items) in enumerate(CATEGORIES, 1):
        template = '{"fields": ["condition", "year"]}' if items else None
        yield cat_id, blank_names.get(cat_id, name), slug, parent, template, START


def _load_ads(
    db: Database,
    files: FileWriter,
    rng: random.Random,
    ads: int,
    users: int,
    plan: AdPlan,
    report: Progress,
) -> int:
    """Copy ads and their images chunk by chunk, writing each image's file; return the image count."""
    old = time.time() - OLD_AGE_S
    next_image = 1
    leader_slugs: dict[int, str] = {}
    for start in range(1, ads + 1, CHUNK):
        ad_rows, image_rows = [], []
        for ad_id in range(start, min(start + CHUNK, ads + 1)):
            ad_rows.append(_ad_row(rng, ad_id, users, plan, leader_slugs))
            count = rng.choices(IMAGE_COUNTS, cum_weights=IMAGE_CUM_WEIGHTS)[0]
            image_rows.extend(_image_rows(ad_id, next_image, count))
            next_image += count
        _copy(db, ADS_COPY, ad_rows)
        _copy(db, IMAGES_COPY, image_rows)
        for row in image_rows:
            files.write(row[2], old)
        report("ads", start + len(ad_rows) - 1, ads)
    return next_image - 1


def _ad_row(
    rng: random.Random, ad_id: int, users: int, plan: AdPlan, leader_slugs: dict[int, str]
) -> tuple[Any, ...]:
    """Return one ad; planted slugs and titles replace the good ones."""
    category = rng.randint(FIRST_LEAF, len(CATEGORIES))
    title = f"{rng.choice(CATEGORIES[category - 1][3])} {rng.randint(2008, 2024)}"
    good_slug = f"{_slug_prefix(title)}-{ad_id}"
    if ad_id in plan.leaders:
        leader_slugs[ad_id] = good_slug
    slug: str | None = good_slug
    if ad_id in plan.duplicate_of:
        slug = leader_slugs[plan.duplicate_of[ad_id]]
    elif ad_id in plan.slugs:
        slug = plan.slugs[ad_id]
    roll = rng.random()
    status = next(name for limit, name in STATUS_CUM if roll < limit)
    price = None if roll > 0.97 else f"{rng.randint(5, 50_000) * 100}.00"
    created = START + timedelta(seconds=ad_id * AD_SPACING_S)
    fields = '{"condition": "used"}' if roll < 0.5 else "{}"
    title = plan.titles.get(ad_id, title)
    description, user = rng.choice(DESCRIPTIONS), rng.randint(1, users)
    return ad_id, title, slug, description, price, category, user, status, fields, created, created


@lru_cache(maxsize=4096)
def _slug_prefix(title: str) -> str:
    """Slugify a title the way the app does before appending the ad id."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "ad"


def _image_rows(ad_id: int, first_id: int, count: int) -> list[tuple[Any, ...]]:
    """Return an ad's image rows, named like multer names uploads: ad-<ms>-<n>.webp."""
    created = START + timedelta(seconds=ad_id * AD_SPACING_S)
    rows = []
    for n in range(count):
        image_id = first_id + n
        name = f"ad-{START_MS + ad_id * AD_SPACING_S * 1000 + n * 173}-{image_id}.webp"
        rows.append((image_id, ad_id, name, f"uploads/ads/{name}", n == 0, created))
    return rows


def _planted_row(row: PlantedImage) -> tuple[Any, ...]:
    return row.id, row.ad_id, row.filename, row.file_path, False, START


def _plant(db: Database, layout: Layout, files: FileWriter, plan: ImagePlan) -> None:
    """Add the planted image rows and lay down their files, the orphans and the fresh uploads."""
    _copy(db, IMAGES_COPY, map(_planted_row, plan.rows))
    with db.transaction():
        # How a restore with triggers disabled lets in rows that break the foreign key.
        db.execute("SET LOCAL session_replication_role = replica")
        _copy(db, IMAGES_COPY, map(_planted_row, plan.dangling))
    old = time.time() - OLD_AGE_S
    shared = layout.shared_dir / planting.SHARED_TARGET
    shared.write_bytes(WEBP)
    os.utime(shared, (old, old))
    for row in plan.rows + plan.dangling:
        _lay_file(layout, files, row, old)
    files.link(planting.STRAY_LINK, f"../shared/{planting.SHARED_TARGET}")
    for name in plan.orphans:
        files.write(name, old)
    now = time.time()  # fresh uploads last, so their grace period starts as late as possible
    for name in plan.fresh:
        files.write(name, now)


def _lay_file(layout: Layout, files: FileWriter, row: PlantedImage, mtime: float) -> None:
    """Create what a planted row's path names: a file, a link into shared, or a link out."""
    if row.file == planting.FILE_REGULAR:
        files.write(row.filename, mtime)
    elif row.file == planting.FILE_LINK_SHARED:
        files.link(row.filename, f"../shared/{planting.SHARED_TARGET}")
    elif row.file in (planting.FILE_LINK_OUT_ABSOLUTE, planting.FILE_LINK_OUT_RELATIVE):
        target = layout.outside_dir / row.filename
        target.write_bytes(WEBP)
        relative = row.file == planting.FILE_LINK_OUT_RELATIVE
        files.link(row.filename, os.path.relpath(target, layout.ads_dir) if relative else str(target))
