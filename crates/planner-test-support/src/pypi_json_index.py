"""A PyPI-compatible index with PEP 691 JSON and PEP 592 yanking, for the package-index tests
(pypi_index.rs beside it starts it; scripts/test-env.sh installs its pinned libraries).

simple-repository-server's own command line serves a directory but cannot yank, so this wires
its library parts the way its README's "Non CLI usage" describes: the local directory
(one subdirectory per normalized project), yanking from an SQLite file the tests write, and
the server's own /simple/ router (PEP 503 HTML or PEP 691 JSON by the Accept header).

Usage: python pypi_json_index.py PACKAGES_DIR YANK_DB PORT   (listens on 127.0.0.1 only)
"""

import contextlib
import pathlib
import sqlite3
import sys

import aiosqlite
import fastapi
import httpx
import uvicorn
from simple_repository.components.local import LocalRepository
from simple_repository.components.yanking import SqliteYankProvider, YankRepository
from simple_repository_server.routers import simple

# The tables SqliteYankProvider reads (it creates them on its first request; made here so the
# tests can yank before any request came).
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS yanked_versions (project_name TEXT, version TEXT, reason TEXT,"
    " date TIMESTAMP DEFAULT CURRENT_TIMESTAMP, CONSTRAINT pk PRIMARY KEY (project_name, version))",
    "CREATE TABLE IF NOT EXISTS yanked_releases (project_name TEXT, file_name TEXT, reason TEXT,"
    " date TIMESTAMP DEFAULT CURRENT_TIMESTAMP, CONSTRAINT pk PRIMARY KEY (project_name, file_name))",
)


def main() -> None:
    root, db, port = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    with contextlib.closing(sqlite3.connect(db)) as conn:
        for statement in SCHEMA:
            conn.execute(statement)
        conn.commit()

    @contextlib.asynccontextmanager
    async def lifespan(app: fastapi.FastAPI):
        async with httpx.AsyncClient() as http, aiosqlite.connect(db) as yanks:
            repo = YankRepository(LocalRepository(root), SqliteYankProvider(yanks))
            app.include_router(simple.build_router(repo, http_client=http))
            yield

    app = fastapi.FastAPI(openapi_url=None, lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info")


if __name__ == "__main__":
    main()
