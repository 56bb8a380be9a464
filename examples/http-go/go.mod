module tinyuki.invalid/http

go 1.19
