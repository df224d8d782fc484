package main

func main() { println("href-counter") }
