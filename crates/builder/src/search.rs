//! (filled by the resolver work of issue 2)
