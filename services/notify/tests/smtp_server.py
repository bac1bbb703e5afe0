"""A real SMTP server process for the tests: aiosmtpd on 127.0.0.1:<port>, AUTH LOGIN/PLAIN
with one user, each accepted message written as <n>.eml into a folder.

    python smtp_server.py PORT FOLDER USER PASSWORD
"""
import sys
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Store:
    def __init__(self, folder: Path):
        self.folder = folder
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.endswith("@refused.example"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        (self.folder / f"{self.count}.eml").write_bytes(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


def main(port: int, folder: str, user: str, password: str) -> None:
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user \
            and auth_data.password.decode() == password
        return AuthResult(success=ok, handled=False)

    Path(folder).mkdir(parents=True, exist_ok=True)
    # No TLS on a loopback test server, so AUTH is allowed without it.
    controller = Controller(Store(Path(folder)), hostname="127.0.0.1", port=port, authenticator=authenticate,
                            auth_require_tls=False, auth_required=True)
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])
