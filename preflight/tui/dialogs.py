"""Modal dialogs: a typed reason (waiving a check, signing off an item), a yes/no confirmation, and a
choice among a few actions (resume or start fresh, at launch)."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class ReasonDialog(ModalScreen[str | None]):
    """Ask for a reason of at least ``min_chars`` characters; dismissed with it, or None on cancel."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, prompt: str, *, min_chars: int, ok_label: str = "OK") -> None:
        super().__init__()
        self.title_text, self.prompt, self.min_chars, self.ok_label = title, prompt, min_chars, ok_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.prompt, classes="dialog-body")
            yield Input(placeholder=f"reason (at least {self.min_chars} characters)", id="reason")
            yield Static("", id="reason-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.ok_label, id="ok", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#reason", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._accept()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self._accept()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _accept(self) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        if len(reason) < self.min_chars:
            self.query_one("#reason-error", Static).update(
                f"a reason of at least {self.min_chars} characters, please ({len(reason)} so far): "
                "it is recorded")
            return
        self.dismiss(reason)


class ConfirmDialog(ModalScreen[bool]):
    """Yes/no; 'y' and 'n' answer from the keyboard, escape is no."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, title: str, body: str, yes_label: str = "Yes") -> None:
        super().__init__()
        self.title_text, self.body, self.yes_label = title, body, yes_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.body, classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.yes_label, id="yes", variant="warning")
                yield Button("No", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # the safe answer is the default

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ChoiceDialog(ModalScreen[str | None]):
    """One of several actions, or cancel: dismissed with the chosen option's id, or None.

    ``options``: (id, button label, key) in order; the key answers from the keyboard. Escape and
    'n' cancel, and Cancel has the focus: the safe answer is the default."""

    BINDINGS = [Binding("n,escape", "cancel", "Cancel")]

    def __init__(self, title: str, body: str, options: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.title_text, self.body, self.options = title, body, options

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.body, classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                for option_id, label, _key in self.options:
                    yield Button(label, id=f"choice-{option_id}", variant="warning")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_key(self, event: events.Key) -> None:
        for option_id, _label, key in self.options:
            if event.key == key:
                event.stop()
                self.dismiss(option_id)
                return

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        button = event.button.id or ""
        self.dismiss(button.removeprefix("choice-") if button.startswith("choice-") else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
