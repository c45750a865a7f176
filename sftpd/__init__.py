"""The SSH/SFTP front door: password logins, chrooted tenant inboxes, upload-complete events.

:class:`~sftpd.server.SftpServer` is the entry point; it emits
:class:`~sftpd.events.UploadCompleted` and knows nothing of what happens to a file next.
"""
