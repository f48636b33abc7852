"""MariaDB from Debian: installed when missing, bound to 127.0.0.1:MYSQL_PORT, the app's user and grants.

Administration runs as root over the unix socket (Debian's unix_socket authentication); the project
connects as imgsearch/imgsearch over TCP. A server that already lets the app user in on MYSQL_PORT is
reused as it is (never restarted, its configuration not rewritten); only its grants are refreshed when
root can reach it. A MariaDB of this machine that definitely runs on another port is restarted on
MYSQL_PORT; one whose port cannot be read is never restarted on a doubt.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devstack.host import Apt, StackError, as_root, can_be_root, log

CONFIG_FILE = Path("/etc/mysql/mariadb.conf.d/60-imgsearch-stack.cnf")
DATABASE, USER, PASSWORD = "imgsearch", "imgsearch", "imgsearch"
# Idempotent; ALTER USER resets the password should it have drifted. `imgsearch\_%` matches throwaway
# test databases such as imgsearch_test_xxx.
SETUP_SQL = r"""CREATE DATABASE IF NOT EXISTS `imgsearch` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS 'imgsearch'@'localhost' IDENTIFIED BY 'imgsearch';
CREATE USER IF NOT EXISTS 'imgsearch'@'127.0.0.1' IDENTIFIED BY 'imgsearch';
ALTER USER 'imgsearch'@'localhost' IDENTIFIED BY 'imgsearch';
ALTER USER 'imgsearch'@'127.0.0.1' IDENTIFIED BY 'imgsearch';
GRANT ALL PRIVILEGES ON `imgsearch`.* TO 'imgsearch'@'localhost';
GRANT ALL PRIVILEGES ON `imgsearch`.* TO 'imgsearch'@'127.0.0.1';
GRANT ALL PRIVILEGES ON `imgsearch\_%`.* TO 'imgsearch'@'localhost';
GRANT ALL PRIVILEGES ON `imgsearch\_%`.* TO 'imgsearch'@'127.0.0.1';
FLUSH PRIVILEGES;
"""
Runner = Callable[[Sequence[str], str | None], subprocess.CompletedProcess]


def run_command(argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False, timeout=120)
    except OSError as error:
        return subprocess.CompletedProcess(list(argv), 127, "", str(error))


def first_command(*names: str) -> str:
    return next((name for name in names if shutil.which(name)), names[-1])


def service_command() -> list[str] | None:
    if shutil.which("service"):
        return ["service", "mariadb"]
    return ["/etc/init.d/mariadb"] if Path("/etc/init.d/mariadb").exists() else None


def server_installed() -> bool:
    found = shutil.which("mariadbd") or shutil.which("mysqld")
    return bool(found) or Path("/usr/sbin/mariadbd").exists() or Path("/usr/sbin/mysqld").exists()


def config_text(port: int) -> str:
    """Bind to 127.0.0.1 on MYSQL_PORT; a conf.d snippet, so it also applies when the server is started
    by other means (init.d, systemd)."""
    header = "# Written by scripts/stack.sh (imgsearch local stack)"
    return f"{header}\n[mysqld]\nbind-address = 127.0.0.1\nport = {port}\n"


@dataclass
class MariaDB:
    """The local MariaDB on MYSQL_PORT; `run` and `sleep` are what the tests replace."""

    port: int
    config_file: Path = CONFIG_FILE
    run: Runner = field(default=run_command)
    sleep: Callable[[float], None] = field(default=time.sleep)

    @property
    def url(self) -> str:
        return f"mysql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    def client(self) -> str:
        return first_command("mariadb", "mysql")

    def admin(self) -> str:
        return first_command("mariadb-admin", "mysqladmin")

    def root_ping(self) -> bool:
        return self.run(as_root([self.admin(), "--protocol=socket", "-uroot", "ping"]), None).returncode == 0

    def root_sql(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return self.run(as_root([self.client(), "--protocol=socket", "-uroot", "-N", "-B", *args]), stdin)

    def root_query(self, sql: str) -> str:
        done = self.root_sql("-e", sql)
        return done.stdout.strip() if done.returncode == 0 else ""

    def app_ping(self) -> bool:
        login = [f"-P{self.port}", f"-u{USER}", f"-p{PASSWORD}", "-N", "-B", "-e", "SELECT 1", DATABASE]
        return self.run([self.client(), "--protocol=tcp", "-h127.0.0.1", *login], None).returncode == 0

    def write_config(self) -> None:
        want = config_text(self.port)
        if self.config_file.is_file() and self.config_file.read_text() == want:
            return
        log(f"writing {self.config_file} (bind 127.0.0.1, port {self.port})")
        if self.run(as_root(["tee", str(self.config_file)]), want).returncode != 0:
            raise StackError(f"cannot write {self.config_file}")

    def service(self, action: str) -> bool:
        command = service_command()
        return command is not None and self.run(as_root([*command, action]), None).returncode == 0

    def wait_for(self, check: Callable[[], bool], seconds: int) -> bool:
        for _ in range(seconds):
            if check():
                return True
            self.sleep(1)
        return False

    def start(self) -> None:
        log("starting MariaDB")
        if not self.service("start"):
            log("service start failed; starting mysqld_safe directly")
            run_folder = ["install", "-d", "-m", "755", "-o", "mysql", "-g", "root", "/run/mysqld"]
            self.run(as_root(run_folder), None)
            self.run(as_root(["sh", "-c", "nohup mysqld_safe >/dev/null 2>&1 &"]), None)
        if not self.wait_for(self.root_ping, 60):
            raise StackError("MariaDB did not answer within 60s (see: journal/syslog or /var/log/mysql)")

    def stop(self) -> None:
        if self.service("stop") and not self.root_ping():
            return
        self.run(as_root([self.admin(), "--protocol=socket", "-uroot", "shutdown"]), None)
        if not self.wait_for(lambda: not self.root_ping(), 30):
            raise StackError("MariaDB did not stop")

    def setup_database(self) -> None:
        if self.root_sql(stdin=SETUP_SQL).returncode != 0:
            raise StackError("setting up the imgsearch database and user failed")


def reuse(db: MariaDB) -> None:
    if server_installed() and can_be_root() and db.root_ping():
        log(f"reusing running MariaDB ({db.root_query('SELECT VERSION()')}, port {db.port})")
        db.setup_database()
    else:
        log(f"reusing MySQL already answering on 127.0.0.1:{db.port} (grants not managed: no root access)")


def up(db: MariaDB) -> None:
    """MariaDB answering the app's login on MYSQL_PORT: reused, set up, moved or started."""
    if db.app_ping():
        reuse(db)
        return
    if not server_installed():
        log("MariaDB server not installed; installing mariadb-server")
        Apt.updated = False
        Apt.install("mariadb-server")
    db.write_config()
    if db.root_ping():
        port = db.root_query("SELECT @@port")
        if port.isdigit() and int(port) != db.port:
            log(f"MariaDB runs on port {port}, want {db.port}; restarting")
            db.stop()
            db.start()
        else:
            log(
                f"MariaDB runs (port {port or '?'}) but the app login failed; "
                "setting up its database and user"
            )
    else:
        db.start()
    db.setup_database()
    if not db.wait_for(db.app_ping, 30):
        raise StackError(f"cannot connect as {USER} to 127.0.0.1:{db.port}/{DATABASE}")
    log(f"MariaDB is up: {db.url}")


def down(db: MariaDB) -> None:
    if not server_installed():
        log("MariaDB is not installed; nothing to stop")
    elif not db.root_ping():
        log("MariaDB is not running")
    else:
        log("stopping MariaDB")
        db.stop()
        log("MariaDB stopped")


def restart(db: MariaDB) -> None:
    db.stop()
    db.start()


def status_line(db: MariaDB) -> str:
    if server_installed() and db.root_ping():
        facts = db.root_query("SELECT CONCAT(VERSION(), ', port ', @@port, ', bind ', @@bind_address)")
        login = "app login OK" if db.app_ping() else "app login FAILED"
        return f"mariadb: running ({facts}), {login}"
    if db.app_ping():
        return f"mariadb: a MySQL server answers on 127.0.0.1:{db.port} (app login OK)"
    return "mariadb: stopped"
