"""A small stand-in for the thulobazaar web app: it writes good and bad rows and files for a while.

`python -m examples.thulobazaar.app_sim --seconds 40` (DATABASE_URL and UPLOADS_ROOT from the
environment). Every step it does one thing an app does, sometimes wrongly, and later repairs
part of what it broke, so findings both open and resolve while the sync stack runs.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

from guard.db.database import Database

WEBP = bytes.fromhex("524946461a000000574542505650384c0d0000002f00000010071011118888fe0700")
FOLDER = "uploads/ads"


class App:
    """One connection, one uploads folder, and a list of repairs due later."""

    def __init__(self, db: Database, root: Path, rng: random.Random) -> None:
        self.db, self.root, self.rng = db, root, rng
        self.repairs: list[tuple[float, str, Callable[[], None]]] = []
        (root / FOLDER).mkdir(parents=True, exist_ok=True)

    def say(self, text: str) -> None:
        print(f"  app  {time.strftime('%H:%M:%S')}  {text}", flush=True)

    def later(self, seconds: float, label: str, fn: Callable[[], None]) -> None:
        self.repairs.append((time.monotonic() + seconds, label, fn))

    def run_due_repairs(self) -> None:
        now = time.monotonic()
        for item in [r for r in self.repairs if r[0] <= now]:
            self.repairs.remove(item)
            self.say(f"repairs: {item[1]}")
            item[2]()

    def new_ad(self, slug: str | None, title: str = "Demo ad") -> int:
        row = self.db.fetch_one(
            "INSERT INTO ads (title, slug, category_id, user_id) "
            "VALUES (%s, %s, (SELECT min(id) FROM categories), (SELECT min(id) FROM users)) "
            "RETURNING id",
            (title, slug),
        )
        assert row is not None
        return int(row[0])

    def good_listing(self) -> str:
        """List an ad with one photo: the upload first, its row a moment later, as the app does."""
        stamp = int(time.time() * 1000)  # listings are 0.3 s apart at least: one per millisecond
        ad = self.new_ad(f"demo-ad-{stamp}")
        rel = f"{FOLDER}/ad-{stamp}-photo.webp"
        (self.root / rel).write_bytes(WEBP)
        time.sleep(0.3)
        self.db.execute(
            "INSERT INTO ad_images (ad_id, filename, file_path) VALUES (%s, %s, %s)",
            (ad, rel.rsplit("/", 1)[1], rel),
        )
        self.say(f"good listing ads:{ad} with {rel}")
        return rel

    def remove_listing(self, ad: int) -> list[str]:
        """Delete an ad as its seller does: the rows (images cascade), then the files they named."""
        rows = self.db.fetch_all("DELETE FROM ad_images WHERE ad_id = %s RETURNING file_path", (ad,))
        self.db.execute("DELETE FROM ads WHERE id = %s", (ad,))
        paths = [str(r[0]) for r in rows]
        for rel in paths:
            (self.root / rel).unlink(missing_ok=True)
        self.say(f"removes ads:{ad} and {len(paths)} files")
        return paths

    def bad_slug(self) -> None:
        ad = self.new_ad("Demo Ad With Spaces")
        self.say(f"BAD slug on ads:{ad}")
        self.later(
            6,
            f"slug of ads:{ad}",
            lambda: self.db.execute("UPDATE ads SET slug = %s WHERE id = %s", (f"fixed-ad-{ad}", ad)),
        )

    def lose_file(self) -> None:
        row = self.db.fetch_one(
            "SELECT id, file_path FROM ad_images WHERE file_path LIKE 'uploads/ads/ad-%%-photo.webp' "
            "ORDER BY random() LIMIT 1"
        )
        if row is None:
            return self.good_listing()
        path = self.root / str(row[1])
        if not path.exists():
            return None
        data = path.read_bytes()
        path.unlink()
        self.say(f"BAD deletes the file of ad_images:{row[0]}")
        self.later(8, f"file of ad_images:{row[0]}", lambda: path.write_bytes(data))
        return None

    def stray_upload(self) -> None:
        rel = f"{FOLDER}/stray-{int(time.time() * 1000)}.webp"
        (self.root / rel).write_bytes(WEBP)
        self.say(f"BAD uploads {rel} and never writes its row")
        self.later(12, f"removes {rel}", lambda: (self.root / rel).unlink(missing_ok=True))

    def step(self) -> None:
        action = self.rng.choices(
            [self.good_listing, self.bad_slug, self.lose_file, self.stray_upload], weights=[5, 2, 1, 1]
        )[0]
        action()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--rate", type=float, default=1.5, help="actions per second")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    root = Path(os.environ["UPLOADS_ROOT"])
    with Database(os.environ["DATABASE_URL"], application_name="thulobazaar-sim") as db:
        app = App(db, root, random.Random(args.seed))
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            app.step()
            app.run_due_repairs()
            time.sleep(1 / args.rate)
        while app.repairs:  # leave the world repaired where the app promised to
            app.run_due_repairs()
            time.sleep(0.2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
