"""``python -m netcortex`` — the same command line as the ``netcortex`` script."""

from netcortex.bridge.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
