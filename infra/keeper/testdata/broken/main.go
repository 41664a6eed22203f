// Command broken does not compile, for the bundler's failure test.
package main

func main() { undefinedFunction() }
