"""The same application with Chainsight's handlers passed explicitly: the
baseline that zero-code tracing must reproduce."""

import litellm
import workload

from chainsight import CallbackHandler, LitellmCallback

callback = LitellmCallback()
litellm.callbacks = [callback]
workload.main(callbacks=[CallbackHandler()])
callback.flush()
