"""delivery-retry: per-(device, chat) delivery cursors projected from the IM_MESSAGES stream.

It keeps, for every chat, its highest seq and its members, and for every device the
highest seq it acked in each chat, and answers which chats a device has to catch up on.
"""
