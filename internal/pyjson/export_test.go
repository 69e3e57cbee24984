package pyjson

// TokenError is the token check, for the benchmarks of package pyjson_test.
var TokenError = tokenError
