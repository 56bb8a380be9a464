module tinyuki.example/hello

go 1.19
