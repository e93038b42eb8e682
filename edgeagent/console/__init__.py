"""The NTD console: the team's daily work in a browser, on the control API's listener.

Server-rendered pages under ``/console/`` (:mod:`.pages`), one stylesheet and one small
script shipped in the package (``assets/``), sign-in and sessions (:mod:`.app`,
:mod:`.sessions`), and exposure by design (:mod:`.exposure`, :mod:`.reveals`): list
entries are masked unless a person reveals one on purpose, with a reason, audited.
"""
