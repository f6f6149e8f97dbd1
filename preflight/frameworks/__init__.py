"""Importers for the training frameworks teams launch RL runs with (verl, TRL, OpenRLHF).

Each framework has one module here (``verl``, ``trl``, ``openrlhf``) exposing ``NAME`` and
``import_source(path, *, version=None, environ=None) -> ImportedRun`` (``environ`` answers the
variables a launch script uses without setting them, default ``os.environ``) and
``REQUIREMENTS``: for each framework version it knows, the package versions that version declares
(``{"0.5.0": {"vllm": ">=0.8.5,<=0.10.0", ...}}``). The ``import`` command finds a module by its name.
The modules read the framework's configuration as users write it (launch scripts, config files),
resolve it against the framework's defaults and map the common fields into a run spec. They never
import the frameworks themselves (nor torch or ray): the check path must stay light.
"""
