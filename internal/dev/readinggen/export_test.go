package readinggen

// PyTokensToNull is exported to the external tests of this package.
var PyTokensToNull = pyTokensToNull
