"""Browser-test fixtures; they live in browser_support (a module name the whole suite can import
beside the other folders' conftest files)."""

from browser_support import browser, live, page  # noqa: F401
