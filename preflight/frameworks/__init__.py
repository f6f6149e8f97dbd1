"""Importers for the training frameworks teams launch RL runs with (verl, TRL, OpenRLHF).

Each framework has one module here (``verl``, ``trl``, ``openrlhf``) exposing ``NAME`` and
``import_source(path, version=None) -> ImportedRun``; ``IMPORTERS`` maps the name a user types to it.
The modules read the framework's configuration as users write it (launch scripts, config files),
resolve it against the framework's defaults and map the common fields into a run spec. They never
import the frameworks themselves (nor torch or ray): the check path must stay light.
"""
