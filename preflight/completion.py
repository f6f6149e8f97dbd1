"""`preflight completion bash|zsh|fish`: shell completion generated from the argparse parser.

The parser is walked once into a tree (subcommands, options, which options take a value and their
choices, positional choices); each shell gets the same tree written in its own syntax, so a new
option or subcommand completes without anyone editing a script. No dependency: shtab and
argcomplete do this too, but argcomplete runs Python on every <Tab> and shtab is one more package
for three small generators.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field

SHELLS = ("bash", "zsh", "fish")


@dataclass
class Option:
    flags: list[str]
    help: str
    takes_value: bool
    choices: list[str]


@dataclass
class Command:
    path: str  # "" for the top level, "data split" for a nested one
    help: str = ""
    options: list[Option] = field(default_factory=list)
    subcommands: dict[str, Command] = field(default_factory=dict)
    positional_choices: list[str] = field(default_factory=list)


def command_tree(parser: argparse.ArgumentParser, path: str = "", help_text: str = "") -> Command:
    node = Command(path, help_text)
    helps = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                node.subcommands[name] = command_tree(sub, f"{path} {name}".strip(), helps.get(name, ""))
        elif action.option_strings:
            node.options.append(Option(list(action.option_strings), _one_line(action.help),
                                       action.nargs != 0, [str(c) for c in action.choices or []]))
        elif action.choices:
            node.positional_choices += [str(c) for c in action.choices]
    return node


def _one_line(text: str | None) -> str:
    return " ".join((text or "").replace("%%", "%").split())[:80]


def _walk(node: Command) -> list[Command]:
    out = [node]
    for sub in node.subcommands.values():
        out += _walk(sub)
    return out


def completion_script(shell: str, parser: argparse.ArgumentParser, prog: str = "preflight") -> str:
    tree = command_tree(parser)
    writers = {"bash": _bash, "zsh": _zsh, "fish": _fish}
    return writers[shell](tree, prog)


# --- bash (4+) and zsh share the tables and the walk ---------------------------------------------


def _tables(tree: Command, declare: str) -> list[str]:
    """Associative arrays keyed by command path: subcommands, options, value-taking options, and
    choices (keyed "PATH OPTION", or "PATH" for positional choices)."""
    subs, opts, valued, choices = [], [], [], []
    for node in _walk(tree):
        path = f"root {node.path}".strip()  # bash has no empty keys: the top level is "root"
        key = shlex.quote(path)
        subs.append(f"[{key}]={shlex.quote(' '.join(node.subcommands))}")
        opts.append(f"[{key}]={shlex.quote(' '.join(f for o in node.options for f in o.flags))}")
        valued.append(f"[{key}]={shlex.quote(' ' + ' '.join(f for o in node.options if o.takes_value for f in o.flags) + ' ')}")
        for o in node.options:
            for flag in o.flags:
                if o.choices:
                    choices.append(f"[{shlex.quote(f'{path} {flag}')}]={shlex.quote(' '.join(o.choices))}")
        if node.positional_choices:
            choices.append(f"[{key}]={shlex.quote(' '.join(node.positional_choices))}")
    name = "_preflight"
    return [f"{declare} {name}_subs=({' '.join(subs)})", f"{declare} {name}_opts=({' '.join(opts)})",
            f"{declare} {name}_valued=({' '.join(valued)})", f"{declare} {name}_choices=({' '.join(choices)})"]


BASH_BODY = r"""
_preflight() {
    local cur prev path=root word i skip=0
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        if ((skip)); then skip=0; continue; fi
        if [[ "${_preflight_valued[$path]}" == *" $word "* ]]; then skip=1; continue; fi
        if [[ " ${_preflight_subs[$path]} " == *" $word "* ]]; then path="$path $word"; fi
    done
    if [[ "${_preflight_valued[$path]}" == *" $prev "* ]]; then
        local key="$path $prev"
        if [[ -n "${_preflight_choices[$key]+x}" ]]; then
            COMPREPLY=($(compgen -W "${_preflight_choices[$key]}" -- "$cur"))
        else
            COMPREPLY=($(compgen -f -- "$cur"))
        fi
        return 0
    fi
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "${_preflight_opts[$path]}" -- "$cur"))
        return 0
    fi
    local words="${_preflight_subs[$path]} ${_preflight_choices[$path]}"
    if [[ -n "${words// /}" ]]; then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}
complete -o filenames -o bashdefault -F _preflight PROG
"""


def _bash(tree: Command, prog: str) -> str:
    head = ["# bash completion for preflight; generated by `preflight completion bash` (bash 4+)",
            "# load it: source <(preflight completion bash), or save it to "
            "~/.local/share/bash-completion/completions/preflight"]
    return "\n".join(head + _tables(tree, "declare -gA")) + BASH_BODY.replace("PROG", prog)


ZSH_BODY = r"""
_preflight() {
    local cur="${words[CURRENT]}" prev="${words[CURRENT-1]}" path=root word i skip=0
    for ((i = 2; i < CURRENT; i++)); do
        word="${words[i]}"
        if ((skip)); then skip=0; continue; fi
        if [[ "${_preflight_valued[$path]}" == *" $word "* ]]; then skip=1; continue; fi
        if [[ " ${_preflight_subs[$path]} " == *" $word "* ]]; then path="$path $word"; fi
    done
    if [[ "${_preflight_valued[$path]}" == *" $prev "* ]]; then
        local key="$path $prev"
        if (( ${+_preflight_choices[$key]} )); then compadd -- ${=_preflight_choices[$key]}; else _files; fi
        return
    fi
    if [[ "$cur" == -* ]]; then compadd -- ${=_preflight_opts[$path]}; return; fi
    local choices="${_preflight_subs[$path]} ${_preflight_choices[$path]}"
    if [[ -n "${choices// /}" ]]; then compadd -- ${=choices}; else _files; fi
}
compdef _preflight PROG
"""


def _zsh(tree: Command, prog: str) -> str:
    head = [f"#compdef {prog}", "# zsh completion for preflight; generated by `preflight completion zsh`",
            "# load it: source <(preflight completion zsh) after compinit, or save it as _preflight in a "
            "folder on $fpath"]
    return "\n".join(head + _tables(tree, "typeset -gA")) + ZSH_BODY.replace("PROG", prog)


# --- fish ---------------------------------------------------------------------------------------


def _fish(tree: Command, prog: str) -> str:
    lines = ["# fish completion for preflight; generated by `preflight completion fish`",
             "# load it: preflight completion fish | source, or save it to "
             "~/.config/fish/completions/preflight.fish", f"complete -c {prog} -f"]
    for node in _walk(tree):
        cond = _fish_condition(node, tree)
        for name, sub in node.subcommands.items():
            lines.append(f"complete -c {prog} -n {shlex.quote(cond)} -a {shlex.quote(name)} -d {shlex.quote(sub.help)}")
        for choice in node.positional_choices:
            lines.append(f"complete -c {prog} -n {shlex.quote(cond)} -a {shlex.quote(choice)}")
        for o in node.options:
            lines.append(f"complete -c {prog} -n {shlex.quote(cond)} {_fish_flags(o)}")
        if not node.subcommands and not node.positional_choices and node.path:
            lines.append(f"complete -c {prog} -n {shlex.quote(cond)} -F")  # its SPEC / RUN_DIR arguments
    return "\n".join(lines) + "\n"


def _fish_condition(node: Command, tree: Command) -> str:
    """Fish's test that the command line is inside ``node`` and not yet in one of its subcommands."""
    if not node.path:
        return "__fish_use_subcommand"
    parts = [f"__fish_seen_subcommand_from {word}" for word in node.path.split()]
    if node.subcommands:
        parts.append("not __fish_seen_subcommand_from " + " ".join(node.subcommands))
    return "; and ".join(parts)


def _fish_flags(o: Option) -> str:
    out = []
    for flag in o.flags:
        out.append(f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}")
    if o.takes_value:
        out.append("-r")
        out.append(f"-a {shlex.quote(' '.join(o.choices))}" if o.choices else "-F")
    if o.help:
        out.append(f"-d {shlex.quote(o.help)}")
    return " ".join(out)
