"""E-mailed notices: a mailbox polled over IMAP with TLS (see :mod:`.notices`)."""
