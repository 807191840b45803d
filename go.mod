module github.com/tenhq/ten

go 1.26.8
