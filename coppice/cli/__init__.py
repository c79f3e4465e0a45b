"""The `coppice` command line: one command group per module, thin.

Each command parses its arguments, calls the ``coppice.filer.Filer`` API,
and prints (a table or ONTAP-style lines for people, ``--json`` for
programs). No rule lives here.
"""
