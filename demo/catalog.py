"""Build a demo/test catalog: real sample photos, several views per product, rows in MySQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import Image, ImageOps

from indexer import MySqlConfig, connect

PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "motorcycle_left", "retina",
    "camera", "coins", "horse", "moon", "page", "brick", "grass", "gravel", "color", "ihc", "logo",
)  # fmt: skip
VIEWS = ("front", "crop", "mirror", "small")
CATALOG_UPDATED_AT = datetime(2026, 1, 1)  # every generated row's updated_at
CATALOG_DDL = (
    "CREATE TABLE IF NOT EXISTS `{table}` ("
    " id BIGINT NOT NULL PRIMARY KEY,"
    " relation_id VARCHAR(64) NULL,"
    " photo VARCHAR(1024) NULL,"
    " updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,"
    " KEY idx_updated (updated_at, id)"
    ") DEFAULT CHARSET=utf8mb4"
)


@dataclass(frozen=True)
class CatalogEntry:
    id: int
    relation_id: str | None
    photo: str | None


def sample_photo(name: str) -> Image.Image:
    """One of scikit-image's bundled sample photographs, as RGB."""
    import skimage

    path = Path(skimage.__file__).parent / "data"
    matches = sorted(path.glob(f"{name}.*"))
    if not matches:
        raise FileNotFoundError(f"scikit-image sample photo {name!r} not found in {path}")
    with Image.open(matches[0]) as image:
        return image.convert("RGB")


def make_view(photo: Image.Image, view: str) -> Image.Image:
    """A second shot of the same product: a crop, a mirror image, or a smaller copy."""
    width, height = photo.size
    if view == "crop":
        return photo.crop((width // 10, height // 10, width - width // 10, height - height // 10))
    if view == "mirror":
        return ImageOps.mirror(photo)
    if view == "small":
        return photo.resize((max(width // 2, 64), max(height // 2, 64)), Image.Resampling.LANCZOS)
    return photo


def write_photo_files(folder: Path, products: int, views: int) -> list[CatalogEntry]:
    """Write `products` x `views` JPEG files and return their catalog rows (ids from 1)."""
    if products > len(PHOTOS) or views > len(VIEWS):
        raise ValueError(f"at most {len(PHOTOS)} products and {len(VIEWS)} views per product")
    folder.mkdir(parents=True, exist_ok=True)
    entries: list[CatalogEntry] = []
    for product_number, name in enumerate(PHOTOS[:products], start=1):
        photo = sample_photo(name)
        for view in VIEWS[:views]:
            filename = f"p{product_number:03d}-{name}-{view}.jpg"
            make_view(photo, view).save(folder / filename, "JPEG", quality=90)
            entries.append(CatalogEntry(len(entries) + 1, f"product-{product_number:03d}", filename))
    return entries


def load_catalog(config: MySqlConfig, entries: list[CatalogEntry], replace: bool = True) -> None:
    """Create the images table if needed and insert the rows (replacing existing ones)."""
    connection = connect(config)
    try:
        cursor = connection.cursor()
        cursor.execute(CATALOG_DDL.format(table=config.table))
        if replace:
            cursor.execute(f"DELETE FROM `{config.table}`")
        cursor.executemany(
            f"INSERT INTO `{config.table}` (id, relation_id, photo, updated_at) VALUES (%s, %s, %s, %s)",
            [(e.id, e.relation_id, e.photo, CATALOG_UPDATED_AT) for e in entries],
        )
        cursor.close()
    finally:
        connection.close()
