package redisstore

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"
)

// RouteClientLogs sends go-redis's own messages ("failed to dial", pool
// trouble) to log at debug level instead of the process's stderr: the
// Storage reports what matters through its errors. go-redis has one
// process-wide logger, so only main calls this, once.
func RouteClientLogs(log *logrus.Entry) {
	redis.SetLogger(clientLog{log})
}

type clientLog struct{ log *logrus.Entry }

func (l clientLog) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...))
}
