"""One module per target kind. Importing the package makes a later import of aiohttp and
httpx skip what no probe uses (aiohttp's import-time CA loads, httpx's CLI): `lean_imports`."""

from console.engine.probes.lean_imports import install

install()
