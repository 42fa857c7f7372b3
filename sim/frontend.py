"""The app's browser code, for machines that cannot reach Solara's CDN.

Solara's page (:mod:`sim.app`) loads its browser code (RequireJS, Font Awesome and
Solara's Vue application bundle) from a CDN at page load. :func:`install_frontend_assets`
(run by ``credsim app`` before it starts the server) puts those npm packages into
Solara's local CDN cache, fetched with ``npm pack`` from the npm registry, so that the
page also works where the CDN is out of reach. Kept apart from :mod:`sim.app` so that
the command line can install them without importing the app (and Solara's server).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

__all__ = ["FRONTEND_PACKAGES", "frontend_packages", "install_frontend_assets"]

logger = logging.getLogger(__name__)

#: npm packages the page's browser code comes from with Solara 1.64 and ipyvue 3 (the
#: locked versions). :func:`frontend_packages` reads the installed Solara's own pins and
#: falls back to these.
FRONTEND_PACKAGES = (
    "requirejs@2.3.6",
    "font-awesome@4.5.0",
    "@widgetti/solara-vuetify3-app@5.2.0",
)


def frontend_packages() -> tuple[str, ...]:
    """The npm packages (``name@version``) that the installed Solara's page loads.

    Read from Solara's page template (the Vue 3 or the Vue 2 application bundle, as the
    installed ipyvue selects, and RequireJS) and its Font Awesome setting, so that a
    Solara upgrade or a different ipyvue changes the list with it.
    """
    import solara.server.server as server
    from solara.server import settings

    template = Path(server.__file__).with_name("templates") / "solara.html.j2"
    try:
        text = template.read_text(encoding="utf-8")
    except OSError:
        return FRONTEND_PACKAGES
    bundle = "solara-vuetify3-app" if server.vue3 else "solara-vuetify-app"
    found = [
        re.search(r"(requirejs@[\d.]+)/", text),
        re.search(rf"(@widgetti/{bundle}@[\d.]+)/", text),
        re.match(r"/?(font-awesome@[\d.]+)/", settings.assets.fontawesome_path),
    ]
    if not all(found):
        return FRONTEND_PACKAGES
    return tuple(m.group(1) for m in found)


def install_frontend_assets(cache_dir: Path | None = None) -> list[str]:
    """Put the page's browser code into Solara's CDN cache; return the packages missing.

    ``cache_dir`` defaults to Solara's (``SOLARA_ASSETS_PROXY_CACHE_DIR``, by default
    ``<venv>/share/solara/cdn``). Packages already there are left alone; others are
    fetched with ``npm pack`` (the npm registry's own client) and unpacked as the CDN lays
    them out (``<name>@<version>/<file>``). Without ``npm``, or when a fetch fails, the
    package is reported missing (and logged) and Solara falls back to the CDN at page
    load.
    """
    if cache_dir is None:
        from solara.server import settings

        cache_dir = Path(settings.assets.proxy_cache_dir)
    cache_dir = Path(cache_dir)
    todo = [p for p in frontend_packages() if not (cache_dir / p / "package.json").is_file()]
    if not todo:
        return []
    npm = shutil.which("npm")
    if npm is None:
        logger.warning("npm not found: the app's page will load %s from the CDN", ", ".join(todo))
        return todo
    missing = []
    for spec in todo:
        logger.info("fetching the app's browser code %s from the npm registry", spec)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                out = subprocess.run(
                    [npm, "pack", spec, "--silent", "--pack-destination", tmp],
                    check=True,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                tgz = Path(tmp) / out.stdout.strip().splitlines()[-1]
                unpacked = Path(tmp) / "unpacked"
                with tarfile.open(tgz) as tar:
                    tar.extractall(unpacked, filter="data")
                target = cache_dir / spec
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():
                    shutil.rmtree(target)
                shutil.move(str(unpacked / "package"), str(target))
            except (subprocess.SubprocessError, OSError, IndexError, tarfile.TarError) as err:
                logger.warning("could not fetch %s (%s); the page will try the CDN", spec, err)
                missing.append(spec)
    return missing
