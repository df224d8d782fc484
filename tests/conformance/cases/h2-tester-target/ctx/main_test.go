package main
func TestX() {}
