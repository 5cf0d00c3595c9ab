"""What the simulator may write to its logs about a recipient."""


def mask_phone(number: object) -> str:
    """All but the last 4 digits hidden: logs must never hold a full phone number."""
    s = str(number)
    if len(s) <= 4:
        return "*" * len(s)
    return "*" * (len(s) - 4) + s[-4:]
