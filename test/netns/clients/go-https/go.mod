module airlock.test/go-https

go 1.22
