"""Neural building blocks shared by more than one method."""
