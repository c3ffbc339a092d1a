package main

func removeBuildDir(int) {}
