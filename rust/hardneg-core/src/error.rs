//! The one error type of the core. Every message says what to change.

/// Result alias used throughout the core.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in the core. Bad input never panics; it returns one of these.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Two inputs disagree on the embedding dimension.
    #[error("{what} has dimension {got} but the corpus has dimension {expected}; embed both with the same model")]
    DimensionMismatch {
        /// Which input is wrong.
        what: &'static str,
        /// The corpus dimension.
        expected: usize,
        /// The dimension found.
        got: usize,
    },
    /// An input has no rows or no columns.
    #[error("{what} is empty ({rows} rows x {dim} columns); pass at least one row with at least one column")]
    Empty {
        /// Which input is empty.
        what: &'static str,
        /// Its number of rows.
        rows: usize,
        /// Its number of columns.
        dim: usize,
    },
    /// A buffer does not hold rows x dim values.
    #[error("{what} holds {len} values, which is not {rows} rows x {dim} columns")]
    BadLength {
        /// Which input is wrong.
        what: &'static str,
        /// Values in the buffer.
        len: usize,
        /// Rows claimed.
        rows: usize,
        /// Columns claimed.
        dim: usize,
    },
    /// A NaN or an infinity was found.
    #[error("{what} has a non-finite value (NaN or Inf) in row {row}; drop or repair that row")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// First offending row.
        row: usize,
    },
    /// A per-query list has the wrong number of rows.
    #[error("{what} has {got} rows but there are {expected} queries; give one row per query")]
    RowCountMismatch {
        /// Which input.
        what: &'static str,
        /// Number of queries.
        expected: usize,
        /// Rows given.
        got: usize,
    },
    /// An id points outside the corpus.
    #[error("{what} for query {row} holds id {id}, outside the corpus ids 0..{n}")]
    IdOutOfRange {
        /// Which input.
        what: &'static str,
        /// The query (row) it belongs to.
        row: usize,
        /// The offending id.
        id: i64,
        /// Corpus size.
        n: usize,
    },
    /// A candidate id below -1 (-1 is the only negative id: a masked candidate).
    #[error("{what} for query {row} holds id {id}; ids must be >= 0, or -1 for a masked candidate")]
    NegativeId {
        /// Which input.
        what: &'static str,
        /// The query (row) it belongs to.
        row: usize,
        /// The offending id.
        id: i64,
    },
    /// An id of a sampler's input (a user, an item, an entity, a relation) lies outside its range.
    #[error("{what} {id} at position {position} is outside 0..{n}; {fix}")]
    OutOfRange {
        /// What kind of id, and of which input ("item id of interactions").
        what: &'static str,
        /// Its position (row) in that input.
        position: usize,
        /// The offending id.
        id: i64,
        /// The number of valid ids.
        n: usize,
        /// What to change.
        fix: &'static str,
    },
    /// A parameter has an impossible value.
    #[error("invalid {name}: {message}")]
    InvalidParameter {
        /// The parameter name as the user knows it.
        name: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// A file to read is missing, unreadable, truncated, corrupted or of another kind.
    #[error("cannot load {path}: {problem}")]
    InputFile {
        /// The file.
        path: String,
        /// What is wrong with it and what to do.
        problem: String,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {problem}")]
    OutputFile {
        /// The file.
        path: String,
        /// The operating system's error.
        problem: String,
    },
    /// The HNSW library (usearch) reported a failure, e.g. out of memory.
    #[error("HNSW index: {0}")]
    Hnsw(String),
    /// The caller asked the job to stop (Ctrl-C).
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    /// Shorthand for [`Error::InvalidParameter`].
    pub fn param(name: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidParameter { name, message: message.into() }
    }
}
