"""The guard's verdict reasons, and where the public suffix list is read from.

Reasons are short and stable because they become keys of ``DesiredState.refused`` /
``Plan.refused`` and metric label values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import publicsuffixlist

REASON_PUBLIC_SUFFIX: Final = "public suffix"  # the root counts as one (the empty suffix)
REASON_PREFIX_TOO_SHORT: Final = "prefix too short"
REASON_PROTECTED: Final = "protected name"
REASON_COVERS_PROTECTED: Final = "covers a protected name"
REASON_ADDRESS_BLOCK: Final = "address block"
REASON_RESERVED: Final = "reserved name"
REASON_COVERS_RESERVED: Final = "covers a reserved name"
REASON_TOO_LONG_FOR_ZONE: Final = "too long for the policy zone"

SYSTEM_PSL_FILE: Final = Path("/usr/share/publicsuffix/public_suffix_list.dat")
BUNDLED_PSL_FILE: Final = Path(publicsuffixlist.PSLFILE)
