// The seed design's JavaScript client, copied verbatim from the seed design
// document (section 客户端实现 / JavaScript/TypeScript实现), unmodified except
// for this header and the export at the end. Tests run it as a terminal built
// on the seed would run, to keep marketcast working for such terminals.
class QuantWebSocket {
  constructor(url, token) {
    this.url = url;
    this.token = token;
    this.ws = null;
    this.reconnectAttempts = 0;
    this.maxReconnectAttempts = 5;
    this.reconnectInterval = 1000;
    this.subscriptions = new Map();
    this.messageHandlers = new Map();
    this.heartbeatInterval = null;
  }

  // 连接WebSocket
  connect() {
    return new Promise((resolve, reject) => {
      this.ws = new WebSocket(this.url);
      
      this.ws.onopen = () => {
        console.log('WebSocket连接成功');
        this.authenticate().then(() => {
          this.startHeartbeat();
          this.reconnectAttempts = 0;
          resolve();
        }).catch(reject);
      };

      this.ws.onmessage = (event) => {
        try {
          const message = JSON.parse(event.data);
          this.handleMessage(message);
        } catch (error) {
          console.error('解析消息失败:', error);
        }
      };

      this.ws.onclose = (event) => {
        console.log('WebSocket连接关闭:', event.code, event.reason);
        this.stopHeartbeat();
        if (!event.wasClean) {
          this.reconnect();
        }
      };

      this.ws.onerror = (error) => {
        console.error('WebSocket错误:', error);
        reject(error);
      };
    });
  }

  // 认证
  async authenticate() {
    return new Promise((resolve, reject) => {
      const authMessage = {
        type: 'auth',
        token: this.token
      };
      
      this.send(authMessage);
      
      // 等待认证响应
      const timeout = setTimeout(() => {
        reject(new Error('认证超时'));
      }, 5000);
      
      this.once('auth_response', (data) => {
        clearTimeout(timeout);
        if (data.status === 'success') {
          resolve(data);
        } else {
          reject(new Error('认证失败'));
        }
      });
    });
  }

  // 发送消息
  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
    } else {
      console.warn('WebSocket未连接，无法发送消息');
    }
  }

  // 订阅频道
  subscribe(channel, options = {}) {
    const message = {
      type: 'subscribe',
      channel: channel,
      ...options
    };
    
    this.send(message);
    this.subscriptions.set(channel, options);
  }

  // 取消订阅
  unsubscribe(channel, options = {}) {
    const message = {
      type: 'unsubscribe',
      channel: channel,
      ...options
    };
    
    this.send(message);
    this.subscriptions.delete(channel);
  }

  // 处理消息
  handleMessage(message) {
    const { type, channel } = message;
    
    // 触发特定类型的处理器
    if (this.messageHandlers.has(type)) {
      this.messageHandlers.get(type).forEach(handler => {
        handler(message.data, message);
      });
    }
    
    // 触发频道处理器
    if (channel && this.messageHandlers.has(channel)) {
      this.messageHandlers.get(channel).forEach(handler => {
        handler(message.data, message);
      });
    }
  }

  // 注册消息处理器
  on(eventType, handler) {
    if (!this.messageHandlers.has(eventType)) {
      this.messageHandlers.set(eventType, []);
    }
    this.messageHandlers.get(eventType).push(handler);
  }

  // 注册一次性处理器
  once(eventType, handler) {
    const onceHandler = (...args) => {
      handler(...args);
      this.off(eventType, onceHandler);
    };
    this.on(eventType, onceHandler);
  }

  // 移除处理器
  off(eventType, handler) {
    if (this.messageHandlers.has(eventType)) {
      const handlers = this.messageHandlers.get(eventType);
      const index = handlers.indexOf(handler);
      if (index > -1) {
        handlers.splice(index, 1);
      }
    }
  }

  // 心跳检测
  startHeartbeat() {
    this.heartbeatInterval = setInterval(() => {
      this.send({
        type: 'ping',
        timestamp: new Date().toISOString()
      });
    }, 30000);
  }

  stopHeartbeat() {
    if (this.heartbeatInterval) {
      clearInterval(this.heartbeatInterval);
      this.heartbeatInterval = null;
    }
  }

  // 重连机制
  reconnect() {
    if (this.reconnectAttempts >= this.maxReconnectAttempts) {
      console.error('重连次数已达上限');
      return;
    }

    const delay = this.reconnectInterval * Math.pow(2, this.reconnectAttempts);
    console.log(`${delay}ms后尝试重连...`);
    
    setTimeout(() => {
      this.reconnectAttempts++;
      this.connect().then(() => {
        // 重新订阅之前的频道
        this.subscriptions.forEach((options, channel) => {
          this.subscribe(channel, options);
        });
      }).catch(error => {
        console.error('重连失败:', error);
      });
    }, delay);
  }

  // 关闭连接
  close() {
    this.stopHeartbeat();
    if (this.ws) {
      this.ws.close(1000, '正常关闭');
    }
  }
}

export { QuantWebSocket };
