"""`python -m unetkit`: the `unetkit` command, for an environment whose scripts folder is not on PATH
(a conda or venv Python called by its full path, a cluster job, a notebook's `!python -m unetkit ...`)."""

from unetkit.cli import entry

if __name__ == "__main__":
    entry()
