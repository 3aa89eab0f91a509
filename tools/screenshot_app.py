"""Screenshot the demo app serving a model, with an image uploaded, in headless Chromium.

    .venv/bin/python tools/screenshot_app.py --model _build/outputs/cpu/brain_mri \\
        --image ../shared/data/brain-tumor-mri/Testing/glioma/Te-gl_0010.jpg --out book/images/app_brain.png

Makes the pictures of the deployment chapter (book/deployment.md); needs Debian's chromium
(tools/install_chromium.sh) and the `playwright` package of requirements.txt.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tools import served_app


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="an export folder (model.keras + model.json)")
    parser.add_argument("--image", required=True, help="the JPEG or PNG to upload")
    parser.add_argument("--out", required=True, help="where to write the PNG screenshot")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("No chromium on PATH: run tools/install_chromium.sh first.")
    scratch = Path(tempfile.mkdtemp())
    with served_app.served_app(args.model, scratch / "streamlit.log") as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=served_app.HEADLESS_CHROMIUM_FLAGS
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1050})
        page.goto(url)
        page.locator('input[type="file"]').set_input_files(args.image)
        page.locator('[data-testid="stMetricValue"]').wait_for(timeout=120_000)
        page.locator('[data-testid="stImage"] img').nth(1).wait_for(timeout=60_000)
        page.wait_for_timeout(2000)  # the chart and the table draw last
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
