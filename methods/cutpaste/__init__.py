"""cutpaste (work in progress)."""
