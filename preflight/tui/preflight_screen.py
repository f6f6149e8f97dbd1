"""The preflight screen: the spec's checks running live, grouped by checklist item; the selected
check's details; waivers with a typed reason; and a launch that only an open gate allows.

With --cluster the checks come back from every node at once: a machine check gets a row per node
('hw.gpu.count @ gpu-2 (10.0.0.2)'), and a panel above the table names each node's status, so a
node that failed or never answered is visible at a glance."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Static
from textual.worker import Worker, WorkerState

from ..errors import PreflightError
from ..result import SEVERITY_ORDER, WAIVABLE, Status, summarise
from ..rundir import FRESH, MIN_REASON, RESUME
from ..service.launch import Launcher
from .dialogs import ChoiceDialog, ConfirmDialog, ReasonDialog
from .glyphs import STATUS_STYLE, Glyphs
from .session import PreflightSession, RunDirOffer

if TYPE_CHECKING:
    from .app import RunConsoleApp

REFRESH_HZ = 10  # check results are shown in batches at most this often, however fast they come
ITEM_PREFIX = "item:"
CHECK_WIDTH = 30  # the longest id, indented, fits at 80 columns
CLUSTER_CHECK_WIDTH = 40  # room for "id @ host (address)"; the details repeat it in full
NODE_LINES = 5  # nodes listed in the panel, worst first; the rest are counted on the last line
WORST_FIRST = {s.value: i for i, s in enumerate(SEVERITY_ORDER)}


class PreflightScreen(Screen[None]):
    BINDINGS = [
        Binding("w", "waive", "Waive"),
        Binding("l", "launch", "Launch"),
        Binding("r", "rerun", "Re-run"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, session: PreflightSession, glyphs: Glyphs, launcher: Launcher | None = None) -> None:
        super().__init__()
        self.session, self.glyphs, self.launcher = session, glyphs, launcher
        self._dirty: set[str] = set()
        self._all_dirty = True
        self._shown_finished = False  # whether the screen has drawn the finished report yet
        self._failed = ""  # why the last check pass raised (e.g. the cluster went away): r retries

    # Layout -------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        spec = self.session.spec
        cluster = f", cluster {self.session.cluster}" if self.session.cluster else ""
        yield Static(f"RL Preflight - run {spec.name} ({self.session.spec_path}), level {self.session.level}"
                     + cluster, id="title")
        with Horizontal(id="gate-row"):
            yield Static("", id="gate")
            yield Button("Launch", id="launch", variant="success", disabled=True)
        if self.session.cluster:
            yield Static("", id="nodes")
        with Horizontal(id="checks-body"):
            yield DataTable(id="checks", cursor_type="row", zebra_stripes=False)
            with VerticalScroll(id="details-scroll"):
                yield Static("", id="details")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#checks", DataTable)
        if self.session.cluster:
            table.add_class("-cluster")  # the stylesheet widens it for the node names
        table.add_column("check", key="check", width=CLUSTER_CHECK_WIDTH if self.session.cluster else CHECK_WIDTH)
        table.add_column("status", key="status", width=8)
        self._add_rows(table)
        self.set_interval(1 / REFRESH_HZ, self._refresh)
        self._refresh()
        table.focus()
        self.run_checks()

    # Running the checks off the UI thread --------------------------------------------------------

    def _add_rows(self, table: DataTable[Any]) -> None:
        for item_id, title, keys in self.session.groups():
            table.add_row(Text(title, style="bold"), "", key=ITEM_PREFIX + item_id)
            for key in keys:
                table.add_row("  " + key, "", key=key)

    def _rebuild_rows(self) -> None:
        """Cluster mode: the planned checks give way to the report's rows (one per node for a
        machine check), or back again for a re-run; the selected row stays selected if it remains."""
        table = self.query_one("#checks", DataTable)
        selected = table.coordinate_to_cell_key(table.cursor_coordinate).row_key if table.row_count else None
        table.clear()
        self._add_rows(table)
        if selected is not None and selected in table.rows:
            table.move_cursor(row=table.get_row_index(selected))

    @work(thread=True, exclusive=True, group="checks", exit_on_error=False)
    def run_checks(self) -> None:
        self.session.run(on_change=self._dirty.add)  # set.add is atomic; the timer drains it

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "checks":
            return
        if event.state == WorkerState.ERROR:
            self._failed = f"the checks could not run: {event.worker.error}; press r to try again"
            self._draw_gate()
            self._draw_nodes()
        elif event.state == WorkerState.SUCCESS:
            self._all_dirty = True
            self._refresh()

    def _drop_unrun_rows(self) -> None:
        """Remove the rows of planned checks the run left out, and items left without a check."""
        table = self.query_one("#checks", DataTable)
        selected = table.coordinate_to_cell_key(table.cursor_coordinate).row_key if table.row_count else None
        kept_items = {ITEM_PREFIX + item_id for item_id, _title, _ids in self.session.groups()}
        for row_key in list(table.rows):
            key = row_key.value or ""
            kept = key in kept_items if key.startswith(ITEM_PREFIX) else key in self.session.defs
            if not kept:
                table.remove_row(row_key)
        if selected is not None and selected in table.rows:  # the user's selection stays put
            table.move_cursor(row=table.get_row_index(selected))

    def _refresh(self) -> None:
        """Redraw what changed since the last tick: the rows of changed checks, their items, the gate."""
        changed = self._row_keys() if self._all_dirty else set()
        self._all_dirty = False
        while self._dirty:
            changed.add(self._dirty.pop())
        if not changed and self.session.finished == self._shown_finished:
            return
        if self.session.finished and not self._shown_finished:
            if self.session.cluster:
                self._rebuild_rows()
            else:
                self._drop_unrun_rows()
            changed = self._row_keys()
        changed &= self._row_keys()
        table = self.query_one("#checks", DataTable)
        for cid in changed:
            self._draw_check_row(table, cid)
        for item_id, _title, check_ids in self.session.groups():
            if changed.intersection(check_ids):
                self._draw_item_row(table, item_id, check_ids)
        self._draw_gate()
        self._draw_nodes()
        self._draw_details()

    def _row_keys(self) -> set[str]:
        return {key for _item, _title, keys in self.session.groups() for key in keys}

    def _draw_check_row(self, table: DataTable[Any], cid: str) -> None:
        state = self.session.state_of(cid)
        style = STATUS_STYLE.get(state, "")
        label = state.upper() if state not in ("queued", "running") else state
        table.update_cell(cid, "status", Text(f"{self.glyphs.mark(state)} {label}", style=style))

    def _draw_item_row(self, table: DataTable[Any], item_id: str, check_ids: list[str]) -> None:
        results = [r for r in (self.session.results.get(c) for c in check_ids) if r is not None]
        state = "running" if len(results) < len(check_ids) else summarise(results).value
        style = STATUS_STYLE.get(state, "")
        label = state.upper() if state != "running" else state
        table.update_cell(ITEM_PREFIX + item_id, "status", Text(f"{self.glyphs.mark(state)} {label}", style=style))

    def _draw_gate(self) -> None:
        self._shown_finished = self.session.finished
        if self._failed:  # stays up until a re-run, whatever the timer redraws meanwhile
            self.query_one("#gate", Static).update(Text(self._failed, style="bold red"))
            self.query_one("#launch", Button).disabled = True
            return
        summary = self.session.gate_summary()
        passed = self.session.report is not None and self.session.report.passed
        style = "bold green" if passed else ("bold red" if self.session.finished else "cyan")
        self.query_one("#gate", Static).update(Text(summary, style=style))
        # a run dir holding a run blocks until the user chooses, which the launch dialog offers
        self.query_one("#launch", Button).disabled = not (self.session.gate_open
                                                          or self.session.run_dir_blocks_only())

    def _draw_nodes(self) -> None:
        """Cluster mode: each node's verdict, worst first, naming the nodes that failed or never answered."""
        if not self.session.cluster:
            return
        panel = self.query_one("#nodes", Static)
        nodes = self.session.nodes()
        if self._failed:
            panel.update(Text("nodes: not checked (see above)", style="bold red"))
            return
        if not self.session.finished:
            panel.update(Text(f"nodes: waiting for every node of {self.session.cluster} to answer "
                              "(at most cluster.node_timeout_s)", style="cyan"))
            return
        answered = sum(1 for n in nodes if n.get("answered"))
        text = Text()
        text.append(f"nodes: {answered} of {len(nodes)} answered", style="bold")
        ranked = sorted(nodes, key=lambda n: WORST_FIRST.get(n["status"], len(WORST_FIRST)))
        shown = ranked if len(ranked) <= NODE_LINES else ranked[:NODE_LINES - 1]
        for node in shown:
            status = node["status"]
            text.append(f"\n{self.glyphs.mark(status)} {status.upper():<6} ", style=STATUS_STYLE.get(status, ""))
            text.append(node["name"])
            if not node.get("answered"):
                text.append(f": not checked, {node.get('error') or 'no answer'}", style="bold red")
            else:
                counts = node.get("summary", {})
                bad = [f"{counts[s]} {s}" for s in ("fail", "error", "warn", "waived") if counts.get(s)]
                text.append(f": {', '.join(bad) or 'all passed'}", style="dim")
        rest = ranked[len(shown):]
        if rest:
            tally: dict[str, int] = {}
            for node in rest:
                tally[node["status"]] = tally.get(node["status"], 0) + 1
            text.append(f"\n  and {len(rest)} more: " + ", ".join(f"{n} {s}" for s, n in tally.items()),
                        style="dim")
        panel.update(text)

    # Details of the selected row ----------------------------------------------------------------

    def selected_check(self) -> str | None:
        table = self.query_one("#checks", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return None if key is None or key.startswith(ITEM_PREFIX) else key

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._draw_details()

    def _draw_details(self) -> None:
        cid = self.selected_check()
        details = self.query_one("#details", Static)
        if cid is None:
            details.update(Text("Select a check (up/down) to see what it expects, what it found and the fix.\n\n"
                                "w waives a failed check with a reason; l launches once the gate passes.",
                                style="dim"))
            return
        d = self.session.defs[self.session.check_of(cid)]
        result = self.session.results.get(cid)
        text = Text()
        text.append(f"{d.id}\n", style="bold")
        text.append(f"{d.title} (level {d.level})\n")
        if result is not None and result.node:
            text.append("node: ", style="bold")
            text.append(f"{result.node}\n")
        text.append("\n")
        if result is None:
            text.append(f"{self.session.state_of(cid)}{self.glyphs.ellipsis}\n", style="cyan")
            details.update(text)
            return
        text.append(result.status.value.upper(), style=STATUS_STYLE.get(result.status.value, ""))
        text.append(f"  in {result.duration_s * 1000:.0f} ms\n\n")
        _field(text, "expected", result.expected)
        _field(text, "found", result.found)
        _field(text, "fix", result.remediation)
        if result.waiver:
            _field(text, "waived", f"{result.waiver.get('reason')} (by {result.waiver.get('by', 'the spec')})")
        if result.note:
            _field(text, "note", result.note)
        if result.status in WAIVABLE:
            every = " (on every node)" if result.node else ""
            text.append(f"\npress w to waive it{every} with a reason", style="dim")
        details.update(text)

    # Actions ------------------------------------------------------------------------------------

    def action_waive(self) -> None:
        cid = self.selected_check()
        result = self.session.results.get(cid) if cid else None
        if cid is None or result is None:
            self.notify("select a check with a result first", severity="warning")
            return
        if result.status not in WAIVABLE:
            self.notify(f"{cid} is {result.status.value}: only a failed or warning check can be waived",
                        severity="warning")
            return

        def apply(reason: str | None) -> None:
            if reason is None:
                return
            try:
                self.session.waive(cid, reason)
            except PreflightError as exc:
                self.notify(str(exc), severity="error")
                return
            if result.node:
                self._all_dirty = True  # the check's rows on every node changed
            else:
                self._dirty.add(cid)
            self._refresh()

        title, found = f"Waive {cid}", result.found
        if result.node:  # waivers are by check id, as on the command line: every node at once
            title, found = f"Waive {result.id} on every node", f"{result.node}: {result.found}"
        self.app.push_screen(ReasonDialog(
            title, f"{found}\nA waiver is recorded in the attestation, with its reason.",
            min_chars=MIN_REASON, ok_label="Waive"), apply)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch":
            event.stop()
            self.action_launch()

    def action_launch(self) -> None:
        if not (self.session.gate_open or self.session.run_dir_blocks_only()):
            self.notify(self.session.gate_summary() if self.session.finished else "the checks are still running",
                        severity="warning")
            return
        run_dir = self.session.spec.run_dir.absolute()
        waived = list(dict.fromkeys(r.id for r in self.session.results.values() if r.status == Status.WAIVED))
        spec = self.session.spec
        what = (f"{spec.framework}'s own command" if spec.framework else "the runner")
        head = (f"Start {what} for {spec.name}?\nrun dir: {run_dir}\n"
                + (f"waived: {', '.join(waived)}\n" if waived else ""))
        tail = "It runs in its own session: quitting this console never stops it."
        try:
            offer = self.session.run_dir_offer()
        except PreflightError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        if offer is not None:
            self._offer_choice(offer, head, tail)
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._launch()

        self.app.push_screen(ConfirmDialog("Launch the run", head + tail, yes_label="Launch"), confirmed)

    def _offer_choice(self, offer: RunDirOffer, head: str, tail: str) -> None:
        """The run dir holds a run: resume it or start fresh, each only where it can work (a
        finished run offers no resume, and there is no launch without a choice)."""
        options, lines = [], [head + offer.what + "\n"]
        if offer.resume:
            options.append((RESUME, "Resume", "r"))
            lines.append(f"r  Resume: {offer.resume}")
        else:
            lines.append(f"Resume is refused: {offer.resume_refused}")
        if offer.fresh:
            options.append((FRESH, "Start fresh", "f"))
            lines.append(f"f  Start fresh: {offer.fresh}")
        else:
            lines.append(f"Start fresh is refused: {offer.fresh_refused}")

        def chosen(choice: str | None) -> None:
            if choice is None:
                return
            try:
                self.session.choose_run_dir(choice)
            except PreflightError as exc:
                self.notify(str(exc), severity="error", timeout=10)
                return
            if self.session.cluster:  # every node judges its own view again
                self.notify(f"{choice} chosen: checking every node again; launch once the gate passes")
                self.action_rerun()
                return
            self._all_dirty = True
            self._refresh()
            if self.session.gate_open:
                self._launch()
            else:
                self.notify(self.session.gate_summary(), severity="warning", timeout=10)

        self.app.push_screen(ChoiceDialog("Launch the run: the run dir holds a run",
                                          "\n".join(lines) + "\n\n" + tail, options), chosen)

    def _launch(self) -> None:
        try:
            launched = self.session.launch(self.launcher)
        except PreflightError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        for before, after in launched.moved_aside:
            self.notify(f"moved {before} aside to {after} (nothing was deleted)", timeout=10)
        app: RunConsoleApp = self.app  # type: ignore[assignment]
        app.show_console(launched.run_dir, spec=self.session.spec, launched=launched)

    def action_rerun(self) -> None:
        if not self.session.finished and not self._failed:
            self.notify("the checks are still running", severity="warning")
            return
        self.session.report = None
        self._failed = ""
        self._shown_finished = False  # so the next report is drawn as new, however fast it comes
        if self.session.cluster:
            self._rebuild_rows()  # back to one row per planned check until the nodes answer again
        self._all_dirty = True
        self.run_checks()


def _field(text: Text, name: str, value: str) -> None:
    if value:
        text.append(f"{name}: ", style="bold")
        text.append(value + "\n")

