"""`opsconsole paths`: the config file and every file the console writes, and who chose them."""

from __future__ import annotations

import argparse
import sys

from console.cli.common import EXIT_OK, data_paths


def cmd_paths(args: argparse.Namespace) -> int:
    import orjson

    from console.engine.config.locate import default_config_path, find_config
    from console.engine.errors import ConfigError

    try:
        config: str | None = str(find_config(getattr(args, "config", None)))
    except ConfigError:
        config = None
    paths = data_paths(args)
    if args.json:
        doc = {"config": config, "default_config": str(default_config_path()),
               "data_dir_source": paths.source,
               **{what.replace(" ", "_"): str(path) for what, path in paths.listing()}}
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(f"{'config':<20} {config or f'none (would be {default_config_path()})'}")
        for what, path in paths.listing():
            print(f"{what:<20} {path}")
        print(f"{'':<20} (data directory from {paths.source}; order: --data-dir, "
              "[console] data_dir, $OPSCONSOLE_DATA_DIR, default)")
    sys.stdout.flush()
    return EXIT_OK
