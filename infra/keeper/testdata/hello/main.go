// Command hello is the smallest main package, for the bundler's tests.
package main

func main() {}
