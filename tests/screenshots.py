"""Screenshots taken by browser tests: each page a test walks through, saved as a PNG.

`Screenshots(folder)` saves into the test's own output folder (pytest's `tmp_path`), and, when
the environment variable CLARION_SCREENSHOTS_DIR names a folder, a copy there too: `make
screenshots` sets it to docs/img/admin/, whose PNGs docs/admin-guide.md shows. The copies are
reduced to a 256-colour palette (Pillow) and optimised: admin pages are flat colours and text,
so they stay sharp at a fraction of the size.
"""

from __future__ import annotations

import os
from pathlib import Path

SCREENSHOTS_DIR_VARIABLE = "CLARION_SCREENSHOTS_DIR"
VIEWPORT = {"width": 1280, "height": 800}


def optimise_png(source: Path, target: Path) -> None:
    """Write `source` (a PNG) to `target` as an optimised 256-colour palette PNG.

    Raises ImportError when Pillow is missing (it is a dev dependency: pip install -e '.[dev]').
    """
    from PIL import Image

    with Image.open(source) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                dither=Image.Dither.NONE)
        palette.save(target, format="PNG", optimize=True)


class Screenshots:
    """Numbered screenshots of one test: `take(page, "editor-home")` writes
    `<folder>/01-editor-home.png`, and `editor-home.png` (optimised, unnumbered: the docs name it
    whatever comes before) to CLARION_SCREENSHOTS_DIR when set. `taken` lists the paths written
    to `folder`, in order."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        extra = os.environ.get(SCREENSHOTS_DIR_VARIABLE, "")
        self.publish_to = Path(extra) if extra else None
        if self.publish_to is not None:
            self.publish_to.mkdir(parents=True, exist_ok=True)
        self.taken: list[Path] = []

    def take(self, page, name: str, *, full_page: bool = False) -> Path:
        """Screenshot the page as it is now (the viewport, or the whole page with `full_page`);
        returns the file written under the test's folder."""
        path = self.folder / f"{len(self.taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=full_page, animations="disabled",
                        caret="hide")
        self.taken.append(path)
        if self.publish_to is not None:
            optimise_png(path, self.publish_to / f"{name}.png")
        return path
