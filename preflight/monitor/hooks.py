"""What happens when an alert fires: a command (``--on-alert-command CMD``) or a webhook
(``--webhook URL``) posting Slack-compatible JSON, ``{"text": "..."}``, which Slack's incoming
webhooks, Mattermost and most chat bridges accept as is.

The command runs through the shell with the alert as JSON on its standard input and in the
environment (PREFLIGHT_ALERT_RULE, _SEVERITY, _STEP, _MESSAGE, _ACTION, PREFLIGHT_RUN). A hook
that fails (a command's non-zero exit, a webhook that does not answer 2xx within the timeout) is
reported on stderr and the monitor goes on following the run: a broken hook must not stop the
watching.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict
from urllib.parse import urlparse

from ..errors import UsageError
from .rules import Alert

TIMEOUT_S = 10.0


def alert_text(alert: Alert, run: str) -> str:
    action = f" Recommended: {alert.action}." if alert.action else ""
    return f"[{alert.severity}] {run}: {alert.rule} at step {alert.step}: {alert.message}.{action}"


def check_webhook(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UsageError(f"--webhook {url}: an http:// or https:// URL, e.g. a Slack incoming webhook")
    return url


class AlertHooks:
    def __init__(self, command: str | None = None, webhook: str | None = None,
                 timeout: float = TIMEOUT_S) -> None:
        self.command = command
        self.webhook = check_webhook(webhook) if webhook else None
        self.timeout = timeout

    def __bool__(self) -> bool:
        return bool(self.command or self.webhook)

    def fire(self, alert: Alert, run: str) -> list[str]:
        """Run every hook for one alert; the problems (empty when all went well)."""
        problems = []
        if self.command:
            problems += self._run_command(alert, run)
        if self.webhook:
            problems += self._post(alert, run)
        return problems

    def _run_command(self, alert: Alert, run: str) -> list[str]:
        assert self.command is not None
        env = dict(os.environ, PREFLIGHT_RUN=run, PREFLIGHT_ALERT_RULE=alert.rule,
                   PREFLIGHT_ALERT_SEVERITY=alert.severity, PREFLIGHT_ALERT_STEP=str(alert.step),
                   PREFLIGHT_ALERT_MESSAGE=alert.message, PREFLIGHT_ALERT_ACTION=alert.action)
        body = json.dumps({"run": run, **asdict(alert)})
        try:
            done = subprocess.run(self.command, shell=True, input=body, text=True, env=env,  # noqa: S602 - the user's own command line
                                  capture_output=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            return [f"alert command did not finish in {self.timeout:g} s: {self.command}"]
        except OSError as exc:
            return [f"alert command could not start ({exc}): {self.command}"]
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            return [f"alert command exited {done.returncode}: {self.command} {tail[0]}".rstrip()]
        return []

    def _post(self, alert: Alert, run: str) -> list[str]:
        import urllib.error  # http.client and socket: only when a webhook is posted, not at every start
        import urllib.request

        assert self.webhook is not None
        data = json.dumps({"text": alert_text(alert, run)}).encode("utf-8")
        request = urllib.request.Request(self.webhook, data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - scheme checked
                status = response.status
        except urllib.error.HTTPError as exc:
            return [f"webhook {self.webhook} answered HTTP {exc.code}"]
        except (urllib.error.URLError, OSError) as exc:
            return [f"webhook {self.webhook} could not be reached ({getattr(exc, 'reason', exc)})"]
        if not 200 <= status < 300:
            return [f"webhook {self.webhook} answered HTTP {status}"]
        return []
