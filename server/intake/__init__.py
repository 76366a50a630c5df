"""Mail intake: a mailbox read over IMAP becomes tickets and comments, and notifications go out
over SMTP (docs/mail.md). The parser is pure; the mailbox reader and the sender are sync."""
